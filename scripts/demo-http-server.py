#!/usr/bin/env python3
"""A tiny HTTP server on a unix socket, to have something to capture."""
import http.server
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {self.path} over a unix socket\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix-client"  # unix clients have no address

    def log_message(self, *args):
        pass


with socketserver.UnixStreamServer(sys.argv[1], Handler) as server:
    server.serve_forever()
