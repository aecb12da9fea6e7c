// An independent OPC UA server for edged's tests and benchmark (node-opcua).
//
//   node server.js --port 48400 --pki /tmp/pki [--bulk 10000] [--bulk-interval 100]
//                  [--trust-user-cert /path/edged.der] [--reject-unknown-users]
//
// Endpoints: None, Basic256Sha256 and Aes128_Sha256_RsaOaep with Sign and
// SignAndEncrypt; anonymous, username (USER/PASS below) and X.509 user
// tokens. The server's own certificate lives in <pki>/server/own and is
// reused across restarts on the same PKI dir; client certificates are
// accepted automatically (a test peer). X.509 user certificates must be
// trusted with --trust-user-cert.
//
// Address space (namespace urn:edged:test, index printed on the ready line):
//   ns=N;s=Counter   Int32, +1 every 100 ms
//   ns=N;s=Temp      Double, Counter/10
//   ns=N;s=Running   Boolean, toggles with Counter
//   ns=N;s=Mode      String "AUTO", read-only
//   ns=N;s=Profile   Double[] [1, 2.5, Counter]
//   ns=N;s=Setpoint  Double, writable
//   ns=N;s=Limit     UInt16 100, writable (a write in another DataType is BadTypeMismatch)
//   Objects/Line1/Speed (ns=N;s=Line1.Speed)  Double, Counter*2, for browse paths
//   ns=N;s=Bulk.00000 … Double, every --bulk-interval ms all set to a new value
//
// Prints "ready port=P ns=N sha1=HEX" on stdout once listening, then
// "written NAME TYPE VALUE" each time a client writes Setpoint or Limit
// (the server's own view of the write, for tests); exits when
// stdin closes or on SIGTERM/SIGINT.
"use strict";
const path = require("path");
const fs = require("fs");
const {
    OPCUAServer, OPCUACertificateManager, Variant, DataType, StatusCodes,
    SecurityPolicy, MessageSecurityMode, makeUserManager,
} = require("node-opcua");

const USER = "operator";
const PASS = "s3cret-Pa55";

function arg(name, def) {
    const i = process.argv.indexOf("--" + name);
    if (i < 0) return def;
    const v = process.argv[i + 1];
    return v === undefined || v.startsWith("--") ? true : v;
}

async function main() {
    const port = parseInt(arg("port", "0"), 10);
    const pki = arg("pki", path.join(process.cwd(), "pki"));
    const bulk = parseInt(arg("bulk", "0"), 10);
    const bulkInterval = parseInt(arg("bulk-interval", "100"), 10);
    const trustUser = arg("trust-user-cert", "");

    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: path.join(pki, "server"),
        automaticallyAcceptUnknownCertificate: true,
    });
    const userCertificateManager = new OPCUACertificateManager({
        rootFolder: path.join(pki, "user"),
        automaticallyAcceptUnknownCertificate: false,
    });
    await serverCertificateManager.initialize();
    await userCertificateManager.initialize();
    if (trustUser) {
        let b = fs.readFileSync(trustUser);
        await userCertificateManager.trustCertificate(b);
    }

    const server = new OPCUAServer({
        port,
        hostname: "127.0.0.1",
        alternateHostname: ["localhost"],
        resourcePath: "",
        disableDiscovery: true,
        securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes128_Sha256_RsaOaep],
        securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
        allowAnonymous: true,
        userManager: makeUserManager({ isValidUser: (u, p) => u === USER && p === PASS }),
        serverCertificateManager,
        userCertificateManager,
        maxConnectionsPerEndpoint: 50,
        serverCapabilities: {
            maxMonitoredItems: 1000000,
            maxMonitoredItemsPerSubscription: 100000,
            operationLimits: { maxNodesPerRead: 5000, maxMonitoredItemsPerCall: 5000, maxNodesPerTranslateBrowsePathsToNodeIds: 5000 },
        },
    });
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.registerNamespace("urn:edged:test");
    const nsi = ns.index;
    const objects = addressSpace.rootFolder.objects;
    let counter = 0;
    const v = (name, dataType, value, extra) => ns.addVariable(Object.assign({
        organizedBy: objects, browseName: name, nodeId: "s=" + name, dataType,
        value: new Variant({ dataType, value }),
    }, extra || {}));
    const vCounter = v("Counter", "Int32", 0);
    const vTemp = v("Temp", "Double", 0);
    const vRunning = v("Running", "Boolean", false);
    v("Mode", "String", "AUTO", { accessLevel: "CurrentRead", userAccessLevel: "CurrentRead" });
    const vProfile = ns.addVariable({
        organizedBy: objects, browseName: "Profile", nodeId: "s=Profile", dataType: "Double", valueRank: 1,
        value: new Variant({ dataType: DataType.Double, arrayType: 1 /* Array */, value: new Float64Array([1, 2.5, 0]) }),
    });
    const rw = { accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite" };
    const writable = [v("Setpoint", "Double", 20.5, rw), v("Limit", "UInt16", 100, rw)];
    const line1 = ns.addObject({ organizedBy: objects, browseName: "Line1", nodeId: "s=Line1" });
    const vSpeed = ns.addVariable({
        componentOf: line1, browseName: "Speed", nodeId: "s=Line1.Speed", dataType: "Double",
        value: new Variant({ dataType: DataType.Double, value: 0 }),
    });
    const bulkVars = [];
    for (let i = 0; i < bulk; i++) {
        const name = "Bulk." + String(i).padStart(5, "0");
        bulkVars.push(ns.addVariable({
            organizedBy: objects, browseName: name, nodeId: "s=" + name, dataType: "Double",
            value: new Variant({ dataType: DataType.Double, value: 0 }),
        }));
    }

    const timers = [];
    timers.push(setInterval(() => {
        counter++;
        vCounter.setValueFromSource(new Variant({ dataType: DataType.Int32, value: counter }));
        vTemp.setValueFromSource(new Variant({ dataType: DataType.Double, value: counter / 10 }));
        vRunning.setValueFromSource(new Variant({ dataType: DataType.Boolean, value: counter % 2 === 1 }));
        vSpeed.setValueFromSource(new Variant({ dataType: DataType.Double, value: counter * 2 }));
        vProfile.setValueFromSource(new Variant({ dataType: DataType.Double, arrayType: 1, value: new Float64Array([1, 2.5, counter]) }));
    }, 100));
    if (bulk > 0) {
        let round = 0;
        timers.push(setInterval(() => {
            round++;
            const now = new Date();
            for (let i = 0; i < bulkVars.length; i++) {
                bulkVars[i].setValueFromSource(new Variant({ dataType: DataType.Double, value: round + i / 100000 }), StatusCodes.Good, now);
            }
        }, bulkInterval));
    }

    let started = false; // the ready line comes first
    for (const w of writable) {
        // Nothing but a client's write changes these two.
        w.on("value_changed", (dv) => {
            if (!started) return;
            process.stdout.write(`written ${w.browseName.name} ${DataType[dv.value.dataType]} ${dv.value.value}\n`);
        });
    }
    await server.start();
    const crypto = require("crypto");
    const sha1 = crypto.createHash("sha1").update(server.getCertificate()).digest("hex");
    process.stdout.write(`ready port=${server.endpoints[0].port} ns=${nsi} sha1=${sha1}\n`);
    started = true;

    let stopping = false;
    const stop = async () => {
        if (stopping) return;
        stopping = true;
        timers.forEach(clearInterval);
        try { await server.shutdown(0); } catch (e) { /* exiting anyway */ }
        try { await serverCertificateManager.dispose(); await userCertificateManager.dispose(); } catch (e) { /* ditto */ }
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    process.stdin.on("end", stop);
    process.stdin.on("error", stop);
    process.stdin.resume();
}

main().catch((err) => {
    process.stderr.write("server.js: " + (err && err.stack || err) + "\n");
    process.exit(1);
});
