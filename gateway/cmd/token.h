/* cmd/token.h - `wsgate token`: mints an HS256 connect token, or explains
 * one (--check), with the verifier the gateway itself uses (core/auth.c).
 *
 * Owns nothing past the call: everything it allocates is freed before it
 * returns. */
#ifndef WSGATE_CMD_TOKEN_H
#define WSGATE_CMD_TOKEN_H

/* argv[0] is "token". Returns the exit status: 0 done (token printed, or
 * the checked token would be accepted), 1 the checked token would be
 * refused, 2 bad input (one line on stderr). */
int cmd_token(int argc, char **argv);

#endif
