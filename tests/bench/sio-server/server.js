// tests/bench/sio-server/server.js - Socket.IO 4 + @socket.io/redis-adapter
// server for the side-by-side benchmark (tests/bench/run.sh --scenario
// sidebyside); not part of wsgate. Speaks what wsbench --proto socketio
// expects: "subscribe" (channel, ack) joins a room, "publish" (channel, data)
// emits "message" (data) to that room on every instance through Redis.
//
//   node server.js PORT REDIS_URL
//
// Prints "listening on 127.0.0.1:PORT" once the adapter's Redis connections
// are up; exits at once on SIGTERM.
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const [port, redisUrl] = process.argv.slice(2);
if (!/^\d+$/.test(port || '') || !/^redis:\/\//.test(redisUrl || '')) {
  console.error('usage: node server.js PORT redis://HOST:PORT');
  process.exit(2);
}

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', (e) => console.error('redis:', e.message));
  await Promise.all([pub.connect(), sub.connect()]);
  const httpServer = http.createServer();
  // websocket only, as wsbench connects: no long-polling upgrade dance.
  const io = new Server(httpServer, { transports: ['websocket'], adapter: createAdapter(pub, sub) });
  io.on('connection', (socket) => {
    socket.on('subscribe', (channel, ack) => {
      socket.join(String(channel));
      if (typeof ack === 'function') ack();
    });
    socket.on('publish', (channel, data) => io.to(String(channel)).emit('message', data));
  });
  httpServer.listen(Number(port), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
  // The bench is over by then: no drain (io.close() waits for every client).
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
