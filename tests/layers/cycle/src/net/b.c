/* fixture of tests/layers/test_check_layers.py */
#include "msghub/a.h"
