/* ws.h - the lws protocol table: every lws callback enters wsgate here.
 *
 * Upgrades are routed by path to a codec (/ws: protocol v1) and become
 * clients (core/client.h) that write through a struct conn implemented
 * here over lws; inbound fragments are joined into whole messages here.
 * HTTP reasons go to http_api.c and fd lifetime to loop.c. The lws context
 * user pointer must be the struct app. */
#ifndef WSGATE_WS_H
#define WSGATE_WS_H

#include <libwebsockets.h>

/* Terminated by an all-zero entry; handles HTTP and every upgrade route. */
extern const struct lws_protocols ws_protocols[];

struct app;

/* For a plain HTTP request (no upgrade) on path: 0 when path is no upgrade
 * route, else what an upgrade of the same request would get, as a status
 * and a snake_case *code: 401 token_missing (or the token's error), 403,
 * 503, or 426 upgrade_required when it would be accepted. Browsers hide a
 * refused handshake's status from scripts; this lets a page ask why. */
unsigned ws_probe(struct app *app, struct lws *wsi, const char **code);

#endif
