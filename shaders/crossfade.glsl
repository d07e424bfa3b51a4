#version 330 core
// crossfade: the previous and the newest generated frames mixed by u_mix (0 = previous,
// 1 = newest). Used while the model is slower than the display, so motion between
// generated frames looks continuous instead of stepped. Letterboxed by the viewport,
// like display.glsl.

#if defined VERTEX_SHADER

out vec2 v_uv;

void main() {
    vec2 pos = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    v_uv = pos * 0.5 + 0.5;
    gl_Position = vec4(pos, 0.0, 1.0);
}

#elif defined FRAGMENT_SHADER

uniform sampler2D u_previous;
uniform sampler2D u_newest;
uniform float u_mix;

in vec2 v_uv;
out vec4 f_color;

void main() {
    vec2 uv = vec2(v_uv.x, 1.0 - v_uv.y);
    vec3 previous = texture(u_previous, uv).rgb;
    vec3 newest = texture(u_newest, uv).rgb;
    f_color = vec4(mix(previous, newest, clamp(u_mix, 0.0, 1.0)), 1.0);
}

#endif
