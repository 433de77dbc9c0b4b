/* placeholder */
#ifndef SP_SIM_FRAME_H
#define SP_SIM_FRAME_H
#endif
