/*
 * A minimal implementation of the exponential-decay schedule speaking the
 * expdecay conformance protocol (JSON lines on stdin/stdout), for
 *     expdecay check --impl "cmd:./expdecay_powf"
 *
 * It computes the way a float32 framework does: cast every input to the
 * format, p = s / D, floor when staircase, w = powf(r, p), lr = I * w
 * (float64 cases use pow).  float16 and bfloat16 are answered "na".
 *
 * The parser relies on the runner's requests: one JSON object per line,
 * every number a string without escapes.  A real port would use a JSON
 * library.  Build: cc -O2 -o expdecay_powf expdecay_powf.c -lm
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The string value of "key" in line, copied into out (empty if absent). */
static void string_field(const char *line, const char *key, char *out, size_t n) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    out[0] = '\0';
    const char *p = strstr(line, pattern);
    if (!p) return;
    p = strchr(p + strlen(pattern), '"');
    if (!p) return;
    const char *end = strchr(++p, '"');
    if (!end || (size_t)(end - p) >= n) return;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
}

/* 1 for true, 0 for false or absent, -1 for anything else (not a bool). */
static int bool_field(const char *line, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(line, pattern);
    if (!p) return 0;
    p += strlen(pattern);
    while (*p == ' ') p++;
    if (strncmp(p, "true", 4) == 0) return 1;
    if (strncmp(p, "false", 5) == 0) return 0;
    return -1;
}

static long id_field(const char *line) {
    const char *p = strstr(line, "\"id\":");
    return p ? strtol(p + 5, NULL, 10) : 0;
}

static void print_float(double x) {
    if (isnan(x)) printf("\"nan\"");
    else if (isinf(x)) printf(x > 0 ? "\"inf\"" : "\"-inf\"");
    else printf("\"%a\"", x);
}

static void answer(const char *line) {
    char buf[128], dtype[16];
    string_field(line, "dtype", dtype, sizeof dtype);
    string_field(line, "initial_learning_rate", buf, sizeof buf);
    double I = strtod(buf, NULL);
    string_field(line, "decay_steps", buf, sizeof buf);
    double D = strtod(buf, NULL);
    string_field(line, "decay_rate", buf, sizeof buf);
    double r = strtod(buf, NULL);
    int staircase = bool_field(line, "staircase");
    int f32 = strcmp(dtype, "float32") == 0, f64 = strcmp(dtype, "float64") == 0;

    printf("{\"id\": %ld, \"results\": [", id_field(line));
    const char *p = strstr(line, "\"steps\"");
    p = p ? strchr(p, '[') : NULL;
    int first = 1;
    while (p && (p = strchr(p, '"')) != NULL) {
        double s = strtod(++p, NULL);
        p = strchr(p, '"');
        if (!p) break;
        p++;
        printf(first ? "" : ", ");
        first = 0;
        if (!f32 && !f64) {
            printf("{\"na\": \"only float32 and float64\"}");
        } else if (staircase < 0) {
            printf("{\"error\": \"staircase must be true or false\"}");
        } else if (!(D > 0) || isinf(D)) {
            printf("{\"error\": \"decay_steps must be finite and > 0\"}");
        } else if (f32) {
            float pf = (float)s / (float)D;
            if (staircase) pf = floorf(pf);
            print_float((double)((float)I * powf((float)r, pf)));
        } else {
            double pd = s / D;
            if (staircase) pd = floor(pd);
            print_float(I * pow(r, pd));
        }
    }
    printf("]}\n");
    fflush(stdout);
}

int main(void) {
    printf("{\"protocol\": \"expdecay-conformance/1\", \"name\": \"expdecay_powf.c\", "
           "\"version\": \"1\"}\n");
    fflush(stdout);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        if (strstr(line, "\"op\": \"applicable\"")) {
            printf("{\"id\": %ld, \"applicable\": null}\n", id_field(line));
            fflush(stdout);
        } else {
            answer(line);
        }
    }
    free(line);
    return 0;
}
