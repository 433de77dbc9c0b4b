/* placeholder */
#ifndef SP_SIM_SAVE_H
#define SP_SIM_SAVE_H
#endif
