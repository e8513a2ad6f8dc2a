package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// splitDBHost reads CHAT_DB_HOST: a host name or address, optionally with
// a port ("" when absent: DATABASE_URL's port stays).
func splitDBHost(v string) (host, port string, err error) {
	if strings.ContainsAny(v, "/@?, ") {
		return "", "", errors.New("want HOST or HOST:PORT, not a URL or a list")
	}
	host = v
	if h, p, err := net.SplitHostPort(v); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("port %q is not a TCP port", p)
		}
		host, port = h, p
	}
	if host == "" {
		return "", "", errors.New("empty host")
	}
	return host, port, nil
}

// pointAt sends the connection to host[:port] instead of DATABASE_URL's,
// keeping its user, password, database and TLS mode. With sslmode
// verify-full the certificate must then match the new host, as RDS Proxy's
// does for its own endpoint.
func pointAt(c *pgx.ConnConfig, hostPort string) error {
	host, port, err := splitDBHost(hostPort)
	if err != nil {
		return err
	}
	c.Host = host
	if port != "" {
		n, _ := strconv.Atoi(port) // checked by splitDBHost
		c.Port = uint16(n)
	}
	// A multi-host URL's other hosts would bypass the proxy.
	c.Fallbacks = nil
	if c.TLSConfig != nil && c.TLSConfig.ServerName != "" {
		c.TLSConfig = c.TLSConfig.Clone()
		c.TLSConfig.ServerName = host
	}
	return nil
}
