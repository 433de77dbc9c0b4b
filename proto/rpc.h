/* placeholder */
#ifndef SP_PROTO_RPC_H
#define SP_PROTO_RPC_H
#endif
