#!/usr/bin/env python3
"""A stand-in for a language-model HTTP API, for udpchat's tests.

It speaks the real streaming wire formats: OpenAI chat completions
(`POST /v1/chat/completions`) and Azure OpenAI
(`POST /openai/deployments/<name>/chat/completions?api-version=...`) as
server-sent events ending in `data: [DONE]`, and Ollama (`POST /api/chat`)
as newline-delimited JSON ending in `"done": true`, all with chunked
transfer encoding. Every request is appended to the log file as one JSON
line (path, lower-cased headers, body) for the test to inspect.

usage: mock_provider.py --scenario NAME [--reply TEXT] [--delay SECONDS] --log FILE
Scenarios: ok, split (events cut into 1-3 byte writes), hold (wait --delay
before answering), late (wait --delay before the first token), cut (close
mid-stream), malformed (an event that is not JSON), 429, 500.
Prints "listening PORT" once it serves on 127.0.0.1.
"""
import argparse
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
log_lock = threading.Lock()


def tokens(text):
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with log_lock, open(args.log, "a") as log:
            log.write(json.dumps({
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }) + "\n")
        ollama = self.path.startswith("/api/chat")
        if args.scenario in ("429", "500"):
            status = int(args.scenario)
            payload = {"error": "slow down" if status == 429 else "model crashed"} if ollama else \
                {"error": {"message": "slow down" if status == 429 else "model crashed", "type": "test"}}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if args.scenario == "hold":
            time.sleep(args.delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson" if ollama else "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if args.scenario == "late":
            time.sleep(args.delay)
        pieces = tokens(args.reply)
        if ollama:
            frames = [json.dumps({"model": body.get("model"), "message": {"role": "assistant", "content": p}, "done": False}) + "\n"
                      for p in pieces]
            frames.append(json.dumps({"model": body.get("model"), "message": {"role": "assistant", "content": ""}, "done": True}) + "\n")
            if args.scenario == "malformed":
                frames.insert(1, "{this is not json\n")
        else:
            frames = ['data: {"choices":[],"prompt_filter_results":[]}\n\n']
            frames += ["data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) + "\r\n\r\n"
                       for p in pieces]
            frames.append(": keep-alive comment\n\n")
            frames.append("data: [DONE]\n\n")
            if args.scenario == "malformed":
                frames.insert(2, "data: {this is not json\n\n")
        if args.scenario == "cut":
            self.write_chunk("".join(frames[: len(frames) // 2]).encode())
            self.wfile.flush()
            time.sleep(0.1)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = "".join(frames).encode()
        if args.scenario == "split":
            position = 0
            while position < len(data):
                size = random.randint(1, 3)
                self.write_chunk(data[position:position + size])
                self.wfile.flush()
                position += size
                time.sleep(0.002)
        else:
            for frame in frames:
                self.write_chunk(frame.encode())
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def main():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", default="ok")
    parser.add_argument("--reply", default="Sounds good to me")
    parser.add_argument("--delay", type=float, default=3.0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
