/* session.c: sessions (see session.h). */
#include "daemon/session.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "spacesim/error.h"

void sp_session_init(sp_session_t *s, uint32_t id, double burst, uint64_t now_ns) {
    memset(s, 0, sizeof *s);
    s->id = id;
    s->tokens = burst;
    s->tokens_ns = now_ns;
}

uint64_t sp_session_take_token(sp_session_t *s, uint64_t now, double rate, double burst) {
    double dt = (double)(now - s->tokens_ns) / 1e9;
    s->tokens_ns = now;
    s->tokens += dt * rate;
    if (s->tokens > burst) s->tokens = burst;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        return 0;
    }
    /* Rounded up, so that after this wait the token is really there. */
    double wait_ns = ceil((1.0 - s->tokens) / rate * 1e9);
    return wait_ns < 1.0 ? 1 : (uint64_t)wait_ns;
}

bool sp_session_name_ok(const char *name, size_t len) {
    const unsigned char *p = (const unsigned char *)name;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07, min = 0x10000;
        else return false; /* continuation byte first, or 0xc0/0xc1/0xf5.. */
        if (len - i < n) return false;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false; /* overlong, too big, surrogate */
        i += n;
    }
    return true;
}

void sp_session_hello(sp_session_t *s, const char *name, size_t len, bool admin,
                      const uint8_t token_hash[SP_SHA256_BYTES]) {
    size_t nl = len < sizeof s->name - 1 ? len : sizeof s->name - 1;
    memcpy(s->name, name, nl);
    s->name[nl] = '\0';
    for (size_t i = 0; i < nl; i++) {
        unsigned char ch = (unsigned char)s->name[i];
        if (ch < 0x20 || ch == 0x7f) s->name[i] = '?';
        /* C1 controls U+0080..U+009F are 0xc2 0x80..0x9f: two '?', still UTF-8. */
        else if (ch == 0xc2 && i + 1 < nl && (unsigned char)s->name[i + 1] <= 0x9f) s->name[i] = s->name[i + 1] = '?';
    }
    s->admin = admin;
    memcpy(s->token_hash, token_hash, SP_SHA256_BYTES);
    s->state = SP_SESSION_READY;
}

int sp_session_new_token(char tok[SP_RESUME_TOKEN_CHARS + 1], uint8_t hash[SP_SHA256_BYTES]) {
    uint8_t raw[SP_RESUME_TOKEN_CHARS / 2];
    size_t got = 0;
    while (got < sizeof raw) { /* <= 256 bytes never come back short, but be exact */
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return SP_EIO;
        got += (size_t)r;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        tok[2 * i] = hex[raw[i] >> 4];
        tok[2 * i + 1] = hex[raw[i] & 15];
    }
    tok[SP_RESUME_TOKEN_CHARS] = '\0';
    explicit_bzero(raw, sizeof raw);
    sp_session_token_hash(tok, SP_RESUME_TOKEN_CHARS, hash);
    return 0;
}

void sp_session_token_hash(const char *tok, size_t len, uint8_t hash[SP_SHA256_BYTES]) { sp_sha256(tok, len, hash); }

void sp_session_prune_ships(sp_session_t *s, const sp_world_t *w) {
    sp_entity_info_t info;
    for (int i = 0; i < s->nships;) {
        if (sp_world_inspect(w, s->ships[i], &info) < 0) s->ships[i] = s->ships[--s->nships];
        else i++;
    }
}

int sp_session_add_ship(sp_session_t *s, uint64_t ship) {
    if (s->nships >= SP_LIMIT_MAX_SHIPS) return SP_ELIMIT;
    s->ships[s->nships++] = ship;
    return 0;
}

void sp_session_end(sp_session_t *s, sp_world_t *w) {
    for (int i = 0; i < s->nships; i++) sp_world_destroy(w, s->ships[i]);
    s->nships = 0;
}

/* ---------------------------------------------------------------- detached */

void sp_session_detach(const sp_session_t *s, uint64_t expires_ns, sp_session_rec_t *r) {
    memset(r, 0, sizeof *r);
    r->id = s->id;
    memcpy(r->name, s->name, sizeof r->name);
    memcpy(r->token_hash, s->token_hash, sizeof r->token_hash);
    memcpy(r->ships, s->ships, sizeof r->ships);
    r->nships = s->nships;
    r->expires_ns = expires_ns;
}

void sp_session_resume(sp_session_t *s, const sp_session_rec_t *r) {
    s->id = r->id;
    memcpy(s->name, r->name, sizeof s->name);
    memcpy(s->token_hash, r->token_hash, sizeof s->token_hash);
    memcpy(s->ships, r->ships, sizeof s->ships);
    s->nships = r->nships;
}

void sp_session_rec_end(sp_session_rec_t *r, sp_world_t *w) {
    for (int i = 0; i < r->nships; i++) sp_world_destroy(w, r->ships[i]);
    r->nships = 0;
}

size_t sp_session_rec_size(const sp_session_rec_t *r) {
    return 4 + 1 + strlen(r->name) + SP_SHA256_BYTES + 1 + 8 * (size_t)r->nships;
}

uint8_t *sp_session_rec_put(uint8_t *p, const sp_session_rec_t *r) {
    size_t nl = strlen(r->name);
    memcpy(p, &r->id, 4); /* little-endian host (x86-64), as the world's format */
    p += 4;
    *p++ = (uint8_t)nl;
    memcpy(p, r->name, nl);
    p += nl;
    memcpy(p, r->token_hash, SP_SHA256_BYTES);
    p += SP_SHA256_BYTES;
    *p++ = (uint8_t)r->nships;
    memcpy(p, r->ships, 8 * (size_t)r->nships);
    return p + 8 * (size_t)r->nships;
}

int sp_session_rec_get(const uint8_t **pp, const uint8_t *end, sp_session_rec_t *r) {
    const uint8_t *p = *pp;
    memset(r, 0, sizeof *r);
    if (end - p < 5) return SP_ECORRUPT;
    memcpy(&r->id, p, 4);
    size_t nl = p[4];
    p += 5;
    if (r->id == 0 || r->id > SP_SESSION_ID_MAX || nl == 0 || nl > SP_LIMIT_MAX_NAME_BYTES) return SP_ECORRUPT;
    if ((size_t)(end - p) < nl + SP_SHA256_BYTES + 1) return SP_ECORRUPT;
    memcpy(r->name, p, nl);
    if (!sp_session_name_ok(r->name, nl) || memchr(r->name, '\0', nl) != NULL) return SP_ECORRUPT;
    p += nl;
    memcpy(r->token_hash, p, SP_SHA256_BYTES);
    p += SP_SHA256_BYTES;
    size_t ns = *p++;
    if (ns > SP_LIMIT_MAX_SHIPS || (size_t)(end - p) < 8 * ns) return SP_ECORRUPT;
    memcpy(r->ships, p, 8 * ns);
    r->nships = (int)ns;
    *pp = p + 8 * ns;
    return 0;
}

void sp_sessions_destroy(sp_session_table_t *t) {
    if (t->v) explicit_bzero(t->v, t->cap * sizeof *t->v);
    free(t->v);
    memset(t, 0, sizeof *t);
}

int sp_sessions_add(sp_session_table_t *t, const sp_session_rec_t *r) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        sp_session_rec_t *v = realloc(t->v, cap * sizeof *v);
        if (v == NULL) return SP_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = *r;
    return 0;
}

long sp_sessions_find(const sp_session_table_t *t, const uint8_t hash[SP_SHA256_BYTES]) {
    long found = -1;
    for (size_t i = 0; i < t->n; i++) /* no early exit: the time says nothing of where */
        if (sp_ct_equal(t->v[i].token_hash, hash, SP_SHA256_BYTES)) found = (long)i;
    return found;
}

void sp_sessions_remove(sp_session_table_t *t, size_t i, sp_session_rec_t *out) {
    if (out) *out = t->v[i];
    t->v[i] = t->v[--t->n];
    explicit_bzero(&t->v[t->n], sizeof t->v[t->n]);
}

long sp_sessions_soonest(const sp_session_table_t *t) {
    long best = -1;
    for (size_t i = 0; i < t->n; i++)
        if (best < 0 || t->v[i].expires_ns < t->v[best].expires_ns) best = (long)i;
    return best;
}
