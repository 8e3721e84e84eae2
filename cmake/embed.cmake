# Turns the file IN into a C source OUT defining <NAME>[] (default mh_web_index),
# <NAME>_len and <NAME>_etag (a quoted strong ETag: the start of the file's SHA-256).
if(NOT NAME)
  set(NAME mh_web_index)
endif()
file(READ ${IN} HEX HEX)
file(SHA256 ${IN} SUM)
string(SUBSTRING "${SUM}" 0 20 SUM)
string(LENGTH "${HEX}" HEXLEN)
math(EXPR LEN "${HEXLEN} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," BYTES "${HEX}")
get_filename_component(SRC ${IN} NAME)
file(WRITE ${OUT} "/* Generated from ${SRC} by cmake/embed.cmake. */\n#include <stddef.h>\n"
     "const unsigned char ${NAME}[] = {${BYTES} 0};\nconst size_t ${NAME}_len = ${LEN};\n"
     "const char ${NAME}_etag[] = \"\\\"${SUM}\\\"\";\n")
