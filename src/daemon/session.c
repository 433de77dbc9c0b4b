/* session.c: sessions (see session.h). */
#include "daemon/session.h"

#include <string.h>

#include "spacesim/error.h"

void sp_session_init(sp_session_t *s, uint32_t id, double burst, uint64_t now_ns) {
    memset(s, 0, sizeof *s);
    s->id = id;
    s->tokens = burst;
    s->tokens_ns = now_ns;
}

bool sp_session_take_token(sp_session_t *s, uint64_t now, double rate, double burst) {
    double dt = (double)(now - s->tokens_ns) / 1e9;
    s->tokens_ns = now;
    s->tokens += dt * rate;
    if (s->tokens > burst) s->tokens = burst;
    if (s->tokens < 1.0) return false;
    s->tokens -= 1.0;
    return true;
}

void sp_session_hello(sp_session_t *s, const char *name, size_t len, bool admin) {
    size_t nl = len < sizeof s->name - 1 ? len : sizeof s->name - 1;
    memcpy(s->name, name, nl);
    s->name[nl] = '\0';
    for (size_t i = 0; i < nl; i++)
        if ((unsigned char)s->name[i] < 0x20 || s->name[i] == 0x7f) s->name[i] = '?';
    s->admin = admin;
    s->state = SP_SESSION_READY;
}

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
