# Turns the file IN into a C source OUT defining mh_web_index[] and its length.
file(READ ${IN} HEX HEX)
string(LENGTH "${HEX}" HEXLEN)
math(EXPR LEN "${HEXLEN} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," BYTES "${HEX}")
file(WRITE ${OUT} "/* Generated from web/index.html by cmake/embed.cmake. */\n#include <stddef.h>\n"
     "const unsigned char mh_web_index[] = {${BYTES} 0};\nconst size_t mh_web_index_len = ${LEN};\n")
