// The gRPC tests' node client: @grpc/grpc-js with routeguide.proto loaded at run time by
// @grpc/proto-loader. Usage: node client.js HOST:PORT; prints one JSON object of results.
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const def = loader.loadSync(path.join(__dirname, "routeguide.proto"), { keepCase: true });
const proto = grpc.loadPackageDefinition(def).routeguide;
// host:port, or a URL ({routes}, the mock's): the scheme is stripped; "tls" as the second
// argument: TLS with the default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, NODE_EXTRA_CA_CERTS)
const target = process.argv[2].split("://").pop();
const creds =
  process.argv[3] === "tls" ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
const guide = new proto.RouteGuide(target, creds);
const greeter = new proto.Greeter(target, creds);

const unary = (client, method, req) =>
  new Promise((resolve) =>
    client[method](req, (err, res) =>
      resolve(err ? { code: err.code, details: err.details } : res)
    )
  );

const stream = (call) =>
  new Promise((resolve) => {
    const out = [];
    call.on("data", (m) => out.push(m));
    call.on("error", (err) => resolve({ code: err.code, details: err.details, got: out }));
    call.on("end", () => resolve(out));
  });

(async () => {
  const results = {};
  results.hello = await unary(greeter, "SayHello", { name: "node" });
  results.feature = await unary(guide, "GetFeature", {
    latitude: 407838351,
    longitude: -746143763,
  });
  results.list = await stream(
    guide.ListFeatures({
      lo: { latitude: 400000000, longitude: -750000000 },
      hi: { latitude: 420000000, longitude: -730000000 },
    })
  );
  results.error = await unary(guide, "GetFeature", { latitude: 0, longitude: 0 });
  const chat = guide.RouteChat();
  const chatDone = stream(chat);
  for (const m of ["a", "b"]) chat.write({ location: { latitude: 1, longitude: 1 }, message: m });
  chat.end();
  results.chat = await chatDone;
  console.log(JSON.stringify(results));
  guide.close();
  greeter.close();
})();
