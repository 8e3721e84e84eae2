/* fixture of tests/layers/test_check_layers.py: a includes b, b includes a */
#include "msghub/b.h"
