#!/bin/sh
# placeholder until the Python client lands
exit 77
