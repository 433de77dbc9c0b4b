/* placeholder */
#ifndef SP_SIM_WORLD_H
#define SP_SIM_WORLD_H
#endif
