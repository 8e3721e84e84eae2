# Fails when a core module (layers 0-4) includes a network or event library,
# so the core stays unit testable without sockets. FILES: comma-separated sources.
string(REPLACE "," ";" FILES "${FILES}")
foreach(f ${FILES})
  file(STRINGS ${f} hits REGEX "#include <(libwebsockets|uv|hiredis|amqp|rabbitmq-c)")
  if(hits)
    message(FATAL_ERROR "${f} is a core module but includes: ${hits}")
  endif()
endforeach()
