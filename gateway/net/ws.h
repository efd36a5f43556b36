/* ws.h - the lws protocol table: every lws callback enters wsgate here and
 * is dispatched to session.c (WebSocket), http_api.c (HTTP) and loop.c
 * (fd lifetime). The lws context user pointer must be the struct app. */
#ifndef WSGATE_WS_H
#define WSGATE_WS_H

#include <libwebsockets.h>

/* Terminated by an all-zero entry; handles both HTTP and /ws upgrades. */
extern const struct lws_protocols ws_protocols[];

#endif
