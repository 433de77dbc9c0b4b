/* placeholder */
#ifndef SP_PROTO_SNAPSHOT_H
#define SP_PROTO_SNAPSHOT_H
#endif
