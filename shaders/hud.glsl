#version 330 core
// hud: a text texture (RGBA, straight alpha) drawn over the frame in a rectangle given
// in normalised device coordinates. Blending (src_alpha, 1 - src_alpha) is set by the
// caller.

#if defined VERTEX_SHADER

uniform vec4 u_rect;  // x0, y0, x1, y1 in NDC; (x0, y1) is the top-left corner

out vec2 v_uv;

void main() {
    // Triangle strip of 4 vertices: (0,0) (1,0) (0,1) (1,1).
    vec2 corner = vec2(float(gl_VertexID & 1), float((gl_VertexID >> 1) & 1));
    v_uv = vec2(corner.x, 1.0 - corner.y);  // texture rows are top first
    gl_Position = vec4(mix(u_rect.xy, u_rect.zw, corner), 0.0, 1.0);
}

#elif defined FRAGMENT_SHADER

uniform sampler2D u_text;
uniform float u_opacity;

in vec2 v_uv;
out vec4 f_color;

void main() {
    vec4 texel = texture(u_text, v_uv);
    f_color = vec4(texel.rgb, texel.a * u_opacity);
}

#endif
