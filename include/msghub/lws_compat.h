/*
 * lws_compat: what msghub assumes about libwebsockets. The code is written
 * and tested against lws 4.1.6, and works around these 4.1 behaviours
 * (behaviour, not API: another release may compile and still differ):
 *
 *  - LWS_WRITE_CLOSE is private (lws-write.h: "handled by
 *    lws_close_reason()"), and lws_close_reason + returning -1 drops the
 *    TCP connection without the frame: session.c and ws.c write the close
 *    frame themselves with the opcode MH_LWS_WRITE_CLOSE below;
 *  - a close payload lws does not understand (code 5000, one byte, a
 *    reason that is not UTF-8) is echoed: ws.c answers 1002 itself;
 *  - the header helpers take the HTTP version from the request, not yet
 *    set at HTTP_CONFIRM_UPGRADE: ws.c writes its refusals whole;
 *  - an empty pong reaches no callback: liveness' pings carry a payload;
 *  - per-connection timers sit in a sorted list (O(connections) to arm)
 *    and the header timeout is armed after the last callback of an
 *    accept: liveness.c keeps its own wheel and cancels lws' timeout at
 *    the end of the loop turn;
 *  - with a protocol's tx_packet_size 0, lws_issue_raw sends at most
 *    rx_buffer_size + LWS_PRE + 4 bytes per send() and copies the rest of
 *    the write into the connection's buffer: server.c sets tx_packet_size
 *    to the session's write size (MH_SESSION_WRITE_BYTES);
 *  - a retry policy with both validity times 0 arms no validity timer
 *    (_lws_validity_confirmed_role): server.c relies on it;
 *  - with its input stopped a connection gets no WRITEABLE either, a
 *    chunked request body is not decoded, and BODY_COMPLETION repeats
 *    while bytes after the body sit unread: http_api.c.
 *
 * Any other release stops the build here: check each point above against
 * it (the integration, fault and abuse suites exercise all of them), then
 * widen the range.
 *
 * Layer 3 (src/net); server.c (app) includes it too.
 */
#ifndef MSGHUB_LWS_COMPAT_H
#define MSGHUB_LWS_COMPAT_H

#include <libwebsockets.h>

#if LWS_LIBRARY_VERSION_MAJOR != 4 || LWS_LIBRARY_VERSION_MINOR != 1
#error "msghub works around libwebsockets 4.1 behaviours: check the list in lws_compat.h"
#endif

/* The close frame's opcode (private in lws 4.1; 4 in every 4.x release). */
#define MH_LWS_WRITE_CLOSE 4

#endif
