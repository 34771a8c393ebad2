// Drive zigbee-herdsman (the zigbee2mqtt host) with its `ember` adapter against an EZSP NCP
// (the project's `sep ncp-emulator`, or a real stick on a TCP serial bridge): start, form a
// network, permit joining, wait for one device to join and be interviewed, read its Basic and
// Metering attributes with herdsman's own ZCL layer, and print one JSON object per line on
// stdout for the caller (tests/test_herdsman.py) to parse. Herdsman's log goes to stderr.
//
//   node run.mjs --port 9999 --dir /tmp/h [--channel 15] [--pan-id 0x1A62] [--timeout 60]
//                [--network-key HEX] [--permit 120] [--reads 2] [--read-gap 1]
//
// Run again with the same --dir and --network-key (as zigbee2mqtt keeps both) and herdsman
// resumes the network on the stick ("started" says "resumed") and reads the device its
// database already holds, without opening the network.
//
// Lines: {"event": "started", ...}, {"event": "network", ...}, {"event": "permitJoin", ...},
// {"event": "deviceJoined", ...}, {"event": "deviceInterview", ...}, {"event": "read", ...}
// (one per --reads, with "at": the wall-clock time in ms), then {"event": "done"} and exit 0;
// {"event": "error", "message": ...} and exit 1 on any failure or on --timeout.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Controller, setLogger } from "zigbee-herdsman";

const { values: opts } = parseArgs({
    options: {
        port: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        dir: { type: "string" },
        channel: { type: "string", default: "15" },
        "pan-id": { type: "string", default: "0x1A62" },
        "network-key": { type: "string" },
        timeout: { type: "string", default: "60" },
        permit: { type: "string", default: "120" },
        reads: { type: "string", default: "2" },
        "read-gap": { type: "string", default: "1" },
        verbose: { type: "boolean", default: false },
    },
});

function emit(event, fields = {}) {
    process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function fail(message) {
    emit("error", { message: String(message) });
    process.exit(1);
}

if (!opts.port || !opts.dir) {
    fail("usage: node run.mjs --port PORT --dir DIR [...]");
}

const levels = ["error", "warning", "info", "debug"];
const shown = new Set(opts.verbose ? levels : ["error", "warning", "info"]);
const log = (level) => (message, namespace) => {
    if (shown.has(level)) {
        const text = typeof message === "function" ? message() : message;
        process.stderr.write(`herdsman ${level} ${namespace}: ${text}\n`);
    }
};
setLogger({ error: log("error"), warning: log("warning"), info: log("info"), debug: log("debug") });

mkdirSync(opts.dir, { recursive: true });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const controller = new Controller({
    network: {
        panID: Number(opts["pan-id"]),
        extendedPanID: [0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd, 0xdd],
        channelList: [Number(opts.channel)],
        // the caller's, else a random one as zigbee2mqtt's `network_key: GENERATE` gives
        networkKey: opts["network-key"]
            ? Array.from(Buffer.from(opts["network-key"], "hex"))
            : Array.from({ length: 16 }, () => Math.floor(Math.random() * 256)),
    },
    serialPort: { path: `tcp://${opts.host}:${opts.port}`, adapter: "ember" },
    databasePath: join(opts.dir, "database.db"),
    databaseBackupPath: join(opts.dir, "database.db.backup"),
    backupPath: join(opts.dir, "coordinator_backup.json"),
    adapter: { disableLED: true, concurrent: 8 },
    acceptJoiningDeviceHandler: async () => true,
});

const timer = setTimeout(() => fail(`timed out after ${opts.timeout} s`), Number(opts.timeout) * 1000);

let joined;
const interviewed = new Promise((resolve, reject) => {
    controller.on("deviceJoined", ({ device }) => {
        joined = device.ieeeAddr;
        emit("deviceJoined", { ieee: device.ieeeAddr, nwk: device.networkAddress });
    });
    controller.on("deviceInterview", ({ status, device }) => {
        emit("deviceInterview", {
            status,
            ieee: device.ieeeAddr,
            type: device.type,
            manufacturerID: device.manufacturerID ?? null,
            modelID: device.modelID ?? null,
            manufacturerName: device.manufacturerName ?? null,
            powerSource: device.powerSource ?? null,
            endpoints: device.endpoints.map((ep) => ({
                id: ep.ID,
                profileID: ep.profileID ?? null,
                deviceID: ep.deviceID ?? null,
                inputClusters: ep.inputClusters,
                outputClusters: ep.outputClusters,
            })),
        });
        if (status === "successful") resolve(device);
        if (status === "failed") reject(new Error(`interview of ${device.ieeeAddr} failed`));
    });
});

try {
    const result = await controller.start();
    emit("started", { result });
    const coordinator = await controller.getCoordinatorVersion();
    const params = await controller.getNetworkParameters();
    emit("network", {
        panID: params.panID,
        extendedPanID: params.extendedPanID,
        channel: params.channel,
        coordinator: coordinator,
        ieee: controller.getDevicesByType("Coordinator")[0]?.ieeeAddr ?? null,
    });
    const known = [...controller.getDevicesIterator((d) => d.type !== "Coordinator" && d.interviewState === "SUCCESSFUL")];
    let device;
    if (known.length > 0) {
        device = known[0];
        emit("known", { ieee: device.ieeeAddr, nwk: device.networkAddress });
    } else {
        await controller.permitJoin(Number(opts.permit));
        emit("permitJoin", { seconds: Number(opts.permit), permitted: controller.getPermitJoin() });
        device = await interviewed;
        await controller.permitJoin(0);
    }
    // the SE endpoint: the one with Metering (0x0702) among its server clusters
    const endpoint = device.endpoints.find((ep) => ep.inputClusters.includes(0x0702));
    if (!endpoint) throw new Error(`no endpoint of ${device.ieeeAddr} has Metering`);
    const basic = await endpoint.read("genBasic", ["modelId", "manufacturerName", "powerSource"]);
    emit("basic", { ieee: device.ieeeAddr, endpoint: endpoint.ID, profileID: endpoint.profileID, ...basic });
    for (let i = 0; i < Number(opts.reads); i++) {
        if (i > 0) await sleep(Number(opts["read-gap"]) * 1000);
        const before = Date.now();
        const metering = await endpoint.read("seMetering", [
            "currentSummDelivered",
            "unitOfMeasure",
            "multiplier",
            "divisor",
            "instantaneousDemand",
        ]);
        const after = Date.now();
        // 48-bit values come as numbers (herdsman's uint48 reader); keep them exact as strings
        const exact = Object.fromEntries(Object.entries(metering).map(([k, v]) => [k, String(v)]));
        emit("read", { ieee: device.ieeeAddr, endpoint: endpoint.ID, sent: before, received: after, ...exact });
    }
    clearTimeout(timer);
    emit("done", { joined });
    await controller.stop();
    process.exit(0);
} catch (error) {
    fail(error?.stack ?? error);
}
