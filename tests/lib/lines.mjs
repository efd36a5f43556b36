// Line splitting for the Node test harnesses (tests/browser, tests/socketio):
// calls fn(line) for each complete line a child's output stream carries.
export function eachLine(stream, fn) {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    buf += chunk;
    for (let i; (i = buf.indexOf("\n")) >= 0; buf = buf.slice(i + 1)) fn(buf.slice(0, i));
  });
}
