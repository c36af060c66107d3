// Framing and signing of Jupyter messages: round trips, bad and replayed signatures, malformed frames.
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { globMatcher } from "../kernel/history.js";
import { decode, encode, MessageFactory, PROTOCOL_VERSION, ReplayGuard, Signer, WireError } from "../kernel/wire.js";

const KEY = "a0436f6c-1916-498b-8eb9-e81ab9368e84";
const factory = new MessageFactory("session-1", "tester");

function signedFrames(parts: string[], key = KEY, identities: string[] = ["client-id"]): Buffer[] {
  const hmac = createHmac("sha256", key);
  const buffers = parts.map((p) => Buffer.from(p));
  for (const b of buffers) hmac.update(b);
  return [...identities.map((i) => Buffer.from(i)), Buffer.from("<IDS|MSG>"), Buffer.from(hmac.digest("hex")), ...buffers];
}

const header = (type = "kernel_info_request", id = "m1") =>
  JSON.stringify({ msg_id: id, msg_type: type, session: "s", username: "u", date: "2024-01-01T00:00:00Z", version: "5.3" });

describe("encode/decode", () => {
  it("round-trips a message with identities and buffers", () => {
    const signer = new Signer(KEY);
    const message = factory.make("execute_request", { code: "1+1", silent: false }, undefined, { cellId: "c" }, [Buffer.from([1, 2, 3])]);
    const frames = encode(message, [Buffer.from("id-a"), Buffer.from("id-b")], signer);
    expect(frames[2].toString()).toBe("<IDS|MSG>");
    const { identities, message: back } = decode(frames, new Signer(KEY));
    expect(identities.map(String)).toEqual(["id-a", "id-b"]);
    expect(back.header).toEqual(message.header);
    expect(back.content).toEqual({ code: "1+1", silent: false });
    expect(back.metadata).toEqual({ cellId: "c" });
    expect(back.parent_header).toEqual({});
    expect(back.buffers.map((b) => [...b])).toEqual([[1, 2, 3]]);
  });

  it("signs like Python's hmac over header, parent, metadata and content", () => {
    const parts = [header(), "{}", "{}", "{}"];
    const { message } = decode(signedFrames(parts), new Signer(KEY));
    expect(message.header.msg_type).toBe("kernel_info_request");
    const out = encode(message, [], new Signer(KEY));
    const expected = createHmac("sha256", KEY);
    for (const frame of out.slice(2, 6)) expected.update(frame);
    expect(out[1].toString()).toBe(expected.digest("hex"));
  });

  it("verifies the exact received bytes, not a re-serialisation", () => {
    // Whitespace and key order a JSON round trip would change.
    const parts = [`{ "msg_type":"kernel_info_request", "msg_id":"x", "session":"s" }`, "{ }", "{}", `{"a":  1}`];
    expect(decode(signedFrames(parts), new Signer(KEY)).message.content).toEqual({ a: 1 });
  });

  it("fills missing optional header fields and stamps messages with the protocol version", () => {
    const parts = [JSON.stringify({ msg_id: "x", msg_type: "kernel_info_request", session: "s" }), "{}", "{}", "{}"];
    expect(decode(signedFrames(parts), new Signer(KEY)).message.header.version).toBe(PROTOCOL_VERSION);
    expect(factory.make("status", {}).header.version).toBe(PROTOCOL_VERSION);
  });
});

describe("signatures", () => {
  it("rejects a wrong signature", () => {
    const frames = signedFrames([header(), "{}", "{}", "{}"], "another key");
    expect(() => decode(frames, new Signer(KEY))).toThrow(/invalid signature/);
  });

  it("rejects a signature of the wrong length or a missing one", () => {
    const frames = signedFrames([header(), "{}", "{}", "{}"]);
    frames[2] = Buffer.from("abc");
    expect(() => decode(frames, new Signer(KEY))).toThrow(WireError);
    frames[2] = Buffer.alloc(0);
    expect(() => decode(frames, new Signer(KEY))).toThrow(/invalid signature/);
  });

  it("rejects content changed after signing", () => {
    const frames = signedFrames([header("execute_request"), "{}", "{}", `{"code":"1"}`]);
    frames[6] = Buffer.from(`{"code":"2"}`);
    expect(() => decode(frames, new Signer(KEY))).toThrow(/invalid signature/);
  });

  it("rejects a replayed message", () => {
    const signer = new Signer(KEY);
    const frames = signedFrames([header(), "{}", "{}", "{}"]);
    decode(frames, signer);
    expect(() => decode(frames, signer)).toThrow(/replayed signature/);
  });

  it("forgets the oldest signatures beyond its memory, keeping the recent ones", () => {
    const signer = new Signer(KEY, "hmac-sha256", new ReplayGuard(4));
    const frames = [1, 2, 3, 4].map((i) => signedFrames([header("kernel_info_request", `m${i}`), "{}", "{}", "{}"]));
    for (const f of frames) decode(f, signer);
    expect(() => decode(frames[2], signer)).toThrow(/replayed/);
    expect(() => decode(frames[3], signer)).toThrow(/replayed/);
    expect(() => decode(frames[0], signer)).not.toThrow();
  });

  it("shares replay memory between signers over one buffer (shell and control threads)", () => {
    const shell = new Signer(KEY);
    const control = new Signer(KEY, "hmac-sha256", new ReplayGuard(shell.replays.buffer));
    const frames = signedFrames([header("shutdown_request", "s1"), "{}", "{}", "{}"]);
    decode(frames, shell);
    expect(() => decode(frames, control)).toThrow(/replayed/);
  });

  it("accepts anything unsigned when the key is empty, and signs with an empty string", () => {
    const signer = new Signer("");
    const frames = [Buffer.from("<IDS|MSG>"), Buffer.from(""), Buffer.from(header()), Buffer.from("{}"), Buffer.from("{}"), Buffer.from("{}")];
    expect(decode(frames, signer).message.header.msg_id).toBe("m1");
    expect(encode(factory.make("status", {}), [], signer)[1].toString()).toBe("");
  });

  it("refuses an unknown signature scheme up front", () => {
    expect(() => new Signer(KEY, "md5-plain")).toThrow(/signature_scheme/);
    expect(() => new Signer(KEY, "hmac-nonesuch")).toThrow();
  });
});

describe("malformed frames", () => {
  const signer = () => new Signer(KEY);
  it("needs a delimiter", () => {
    expect(() => decode([Buffer.from("garbage")], signer())).toThrow(/delimiter/);
    expect(() => decode([], signer())).toThrow(/delimiter/);
  });
  it("needs five frames after the delimiter", () => {
    const frames = signedFrames([header(), "{}", "{}", "{}"]);
    expect(() => decode(frames.slice(0, -1), signer())).toThrow(/expected 5 frames/);
  });
  it("treats the first delimiter as the end of the identities", () => {
    const frames = signedFrames([header(), "{}", "{}", "{}"], KEY, ["a", "b", "c"]);
    expect(decode(frames, signer()).identities.map(String)).toEqual(["a", "b", "c"]);
  });
  it("rejects invalid JSON and non-object frames, even when signed", () => {
    expect(() => decode(signedFrames(["{not json", "{}", "{}", "{}"]), signer())).toThrow(/header is not valid JSON/);
    expect(() => decode(signedFrames([header(), "[]", "{}", "{}"]), signer())).toThrow(/parent_header is not a JSON object/);
    expect(() => decode(signedFrames([header(), "{}", "null", "{}"]), signer())).toThrow(/metadata/);
    expect(() => decode(signedFrames([header(), "{}", "{}", "42"]), signer())).toThrow(/content/);
    expect(() => decode(signedFrames([header(), "{}", "{}", Buffer.from([0xff, 0xfe]).toString("latin1")]), signer())).toThrow(WireError);
  });
  it("rejects headers without msg_id, msg_type or session", () => {
    for (const field of ["msg_id", "msg_type", "session"]) {
      const h = JSON.parse(header()) as Record<string, unknown>;
      delete h[field];
      expect(() => decode(signedFrames([JSON.stringify(h), "{}", "{}", "{}"]), signer())).toThrow(new RegExp(`header.${field}`));
      h[field] = 7;
      expect(() => decode(signedFrames([JSON.stringify(h), "{}", "{}", "{}"]), signer())).toThrow(new RegExp(`header.${field}`));
    }
  });
});

describe("history search glob", () => {
  it("follows sqlite GLOB", () => {
    expect(globMatcher("1*")("1+1")).toBe(true);
    expect(globMatcher("1*")("21")).toBe(false);
    expect(globMatcher("a?c")("abc")).toBe(true);
    expect(globMatcher("[ab]x")("bx")).toBe(true);
    expect(globMatcher("[^ab]x")("bx")).toBe(false);
    expect(globMatcher("*.log(*)*")("console.log(1)\n")).toBe(true);
    expect(globMatcher("Math.max")("Mathxmax")).toBe(false);
  });
});
