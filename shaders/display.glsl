#version 330 core
// display: the newest generated frame, filling the viewport it is drawn into.
// Letterboxing is done by the caller's viewport (live/display/display.py), so the frame
// keeps its aspect ratio on any window and the bars are plain cleared pixels.
// With CROSSFADE defined, the previous frame is mixed in by u_mix (0 = previous, 1 =
// newest): used while the model is slower than the display, so motion between generated
// frames looks continuous instead of stepped.

#if defined VERTEX_SHADER

out vec2 v_uv;

void main() {
    // One triangle that covers the viewport; no vertex buffer needed.
    vec2 pos = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    v_uv = pos * 0.5 + 0.5;
    gl_Position = vec4(pos, 0.0, 1.0);
}

#elif defined FRAGMENT_SHADER

uniform sampler2D u_frame;  // the newest frame
#if defined CROSSFADE
uniform sampler2D u_previous;
uniform float u_mix;
#endif

in vec2 v_uv;
out vec4 f_color;

void main() {
    // Frames are uploaded top row first; GL textures start at the bottom.
    vec2 uv = vec2(v_uv.x, 1.0 - v_uv.y);
#if !defined CROSSFADE
    f_color = vec4(texture(u_frame, uv).rgb, 1.0);
#else
    vec3 previous = texture(u_previous, uv).rgb;
    vec3 newest = texture(u_frame, uv).rgb;
    f_color = vec4(mix(previous, newest, clamp(u_mix, 0.0, 1.0)), 1.0);
#endif
}

#endif
