// Preloaded (NODE_OPTIONS=--require) into the Node servers the soak runs: a listen() given a
// port and no host binds to 127.0.0.1, not to every interface. mcp-server-everything calls
// app.listen(PORT) and has no host setting of its own.
"use strict";
const net = require("node:net");

const LOOPBACK = "127.0.0.1";
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const [first] = args;
  const isPort = typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first));
  if (isPort && typeof args[1] !== "string") {
    args.splice(1, 0, LOOPBACK);
  } else if (first && typeof first === "object" && first.path === undefined && !first.host) {
    args[0] = { ...first, host: LOOPBACK };
  }
  return listen.apply(this, args);
};
