/*
 * msglog_closed: a log that is gone (shutdown): every operation fails with
 * MH_EIO inside the call. Plugged in when the real log is freed while
 * sessions may still close or callbacks still run, so that no caller ever
 * meets a freed log.
 */
#ifndef MSGHUB_MSGLOG_CLOSED_H
#define MSGHUB_MSGLOG_CLOSED_H

#include "msghub/msglog.h"

/* Fills *out with the closed log (static; freeing it is a no-op). */
void mh_msglog_closed(mh_msglog_t *out);

#endif
