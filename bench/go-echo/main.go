// Command go-echo is the Go reference for the echo benchmarks: a line-echo
// server written the plain Go way, with `msg:` stripped like the real server
// does, so both send the same bytes.
//
//	go-echo tcp PORT   one goroutine per connection, bufio reads and writes
//	go-echo udp PORT   a pool of goroutines (GOMAXPROCS x 32) reading one socket
//
// scripts/bench-tcp and scripts/bench-udp build it and measure it in the
// same runs as playground and the minimal tokio echo.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
)

var prefix = []byte("msg:")

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go-echo tcp|udp PORT")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[2])
	if err != nil {
		log.Fatalf("bad port %q: %v", os.Args[2], err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	switch os.Args[1] {
	case "tcp":
		serveTCP(addr)
	case "udp":
		serveUDP(addr)
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func serveTCP(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			continue
		}
		go echoLines(conn)
	}
}

// echoLines answers every line of one connection; a reply is flushed when no
// further request is already buffered, so pipelined requests share a write.
func echoLines(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		w.Write(bytes.TrimPrefix(line, prefix))
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

func serveUDP(addr string) {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	workers := runtime.GOMAXPROCS(0) * 32
	done := make(chan struct{})
	for i := 0; i < workers; i++ {
		go func() {
			buf := make([]byte, 65536)
			reply := make([]byte, 0, 65536)
			for {
				n, from, err := conn.ReadFrom(buf)
				if err != nil {
					continue
				}
				datagram := bytes.TrimSuffix(buf[:n], []byte("\n"))
				reply = append(append(reply[:0], bytes.TrimPrefix(datagram, prefix)...), '\n')
				conn.WriteTo(reply, from)
			}
		}()
	}
	<-done
}
