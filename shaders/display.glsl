#version 330 core
// display: the newest generated frame, filling the viewport it is drawn into.
// Letterboxing is done by the caller's viewport (live/window.py), so the frame keeps
// its aspect ratio on any window and the bars are plain cleared pixels.

#if defined VERTEX_SHADER

out vec2 v_uv;

void main() {
    // One triangle that covers the viewport; no vertex buffer needed.
    vec2 pos = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    v_uv = pos * 0.5 + 0.5;
    gl_Position = vec4(pos, 0.0, 1.0);
}

#elif defined FRAGMENT_SHADER

uniform sampler2D u_frame;

in vec2 v_uv;
out vec4 f_color;

void main() {
    // Frames are uploaded top row first; GL textures start at the bottom.
    f_color = vec4(texture(u_frame, vec2(v_uv.x, 1.0 - v_uv.y)).rgb, 1.0);
}

#endif
