// The peer of bench/fanout.py: a minimal Node.js broadcast server on the npm package `ws`.
// Every {"type":"publish",...} frame from any client is numbered, wrapped in the same "message"
// frame shape Nuvem sends, stringified once and sent to every open client. Other frames (join)
// get an ack so the load clients can run the same script against both servers.
// Usage: node node_ws_server.js PORT
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 4100);
const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, backlog: 4096 });
let offset = 0;

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    let frame;
    try { frame = JSON.parse(data.toString()); } catch (e) { return; }
    if (frame.type === 'publish') {
      offset += 1;
      const out = JSON.stringify({
        type: 'message', channel: frame.channel, offset, event: frame.event,
        payload: frame.payload, publishedAt: new Date().toISOString(),
      });
      for (const client of wss.clients) {
        if (client.readyState === WebSocket.OPEN) client.send(out);
      }
      ws.send(JSON.stringify({ type: 'ack', ref: frame.ref, channel: frame.channel, offset }));
    } else if (frame.type === 'join') {
      ws.send(JSON.stringify({ type: 'ack', ref: frame.ref, channel: frame.channel, offset }));
    }
  });
});
wss.on('listening', () => console.log(`listening on ${port}`));
