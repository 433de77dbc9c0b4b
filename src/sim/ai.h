/* placeholder */
#ifndef SP_SIM_AI_H
#define SP_SIM_AI_H
#endif
