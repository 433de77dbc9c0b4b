// bench/peer_moody.cpp: moodycamel::ConcurrentQueue behind plain C calls
// (see bench/peers.h). The only C++ in the project: benchmarks link it, the
// library and the tests never do.
#include "peers.h"

#include <new>

#include <concurrentqueue/concurrentqueue.h>

typedef moodycamel::ConcurrentQueue<void *> queue_t;

extern "C" {

void *peer_moody_create(size_t capacity, int producers) {
    // Explicit producers only (tokens), so every block is pre-allocated here
    // and try_enqueue never allocates.
    return new (std::nothrow) queue_t(capacity, (size_t)producers, 0);
}
void peer_moody_free(void *q) { delete static_cast<queue_t *>(q); }

void *peer_moody_ptok(void *q) { return new (std::nothrow) moodycamel::ProducerToken(*static_cast<queue_t *>(q)); }
void peer_moody_ptok_free(void *tok) { delete static_cast<moodycamel::ProducerToken *>(tok); }
void *peer_moody_ctok(void *q) { return new (std::nothrow) moodycamel::ConsumerToken(*static_cast<queue_t *>(q)); }
void peer_moody_ctok_free(void *tok) { delete static_cast<moodycamel::ConsumerToken *>(tok); }

int peer_moody_try_enqueue(void *q, void *ptok, void *item) {
    return static_cast<queue_t *>(q)->try_enqueue(*static_cast<moodycamel::ProducerToken *>(ptok), item) ? 1 : 0;
}
int peer_moody_try_dequeue(void *q, void *ctok, void **item) {
    return static_cast<queue_t *>(q)->try_dequeue(*static_cast<moodycamel::ConsumerToken *>(ctok), *item) ? 1 : 0;
}
size_t peer_moody_try_enqueue_bulk(void *q, void *ptok, void *const *items, size_t n) {
    return static_cast<queue_t *>(q)->try_enqueue_bulk(*static_cast<moodycamel::ProducerToken *>(ptok), items, n) ? n
                                                                                                                 : 0;
}
size_t peer_moody_try_dequeue_bulk(void *q, void *ctok, void **items, size_t n) {
    return static_cast<queue_t *>(q)->try_dequeue_bulk(*static_cast<moodycamel::ConsumerToken *>(ctok), items, n);
}

}  // extern "C"
