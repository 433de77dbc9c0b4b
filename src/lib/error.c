/* error.c: error strings and the default allocator. */
#include <stdlib.h>

#include "spacesim/common.h"

const char *sp_strerror(int err) {
    switch (err) {
    case 0: return "success";
#define SP__ERR_MSG(name, value, msg) case (value): return msg;
        SP_ERRNO_MAP(SP__ERR_MSG)
#undef SP__ERR_MSG
    default: return "unknown error";
    }
}

const char *sp_err_name(int err) {
    switch (err) {
    case 0: return "SP_OK";
#define SP__ERR_NAME(name, value, msg) case (value): return "SP_" #name;
        SP_ERRNO_MAP(SP__ERR_NAME)
#undef SP__ERR_NAME
    default: return "SP_UNKNOWN";
    }
}

static void *default_alloc(void *ctx, size_t size, size_t align) {
    (void)ctx;
    if (align < sizeof(void *)) align = sizeof(void *);
    /* aligned_alloc needs size to be a multiple of align (C11 7.22.3.1). */
    size_t rounded;
    if (sp_size_add(size, align - 1, &rounded) != 0) return NULL;
    rounded &= ~(align - 1);
    if (rounded == 0) rounded = align;
    return aligned_alloc(align, rounded);
}

static void default_free(void *ctx, void *ptr, size_t size, size_t align) {
    (void)ctx;
    (void)size;
    (void)align;
    free(ptr);
}

static const sp_allocator_t default_allocator = {default_alloc, default_free, NULL};

const sp_allocator_t *sp_allocator_default(void) { return &default_allocator; }
