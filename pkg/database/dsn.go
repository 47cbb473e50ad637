package database

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// URLFromParts assembles a service's database URL from DATABASE_HOST,
// DATABASE_PORT (5432), DATABASE_USER, DATABASE_PASSWORD, DATABASE_NAME
// (name) and DATABASE_SSLMODE (require), read through getenv. It is how a
// task on ECS connects: the password comes straight from Secrets Manager
// (the container's `secrets`, valueFrom the secret's password key), so a
// rotated password reaches every task that starts after the rotation, with
// no URL to rebuild.
//
// ok is false when DATABASE_URL is set (it wins) or DATABASE_HOST is not
// (the caller keeps its default). The user and password are escaped, so a
// password may hold any character.
func URLFromParts(getenv func(string) string, name string) (dsn string, ok bool, err error) {
	host := getenv("DATABASE_HOST")
	if getenv("DATABASE_URL") != "" || host == "" {
		return "", false, nil
	}
	var errs []error
	port := 5432
	if v := getenv("DATABASE_PORT"); v != "" {
		if port, err = strconv.Atoi(v); err != nil || port < 1 || port > 65535 {
			errs = append(errs, fmt.Errorf("DATABASE_PORT must be a port number, got %q", v))
		}
	}
	user := getenv("DATABASE_USER")
	if user == "" {
		errs = append(errs, errors.New("DATABASE_USER must be set with DATABASE_HOST"))
	}
	if v := getenv("DATABASE_NAME"); v != "" {
		name = v
	}
	sslmode := "require"
	if v := getenv("DATABASE_SSLMODE"); v != "" {
		sslmode = v
	}
	if err := errors.Join(errs...); err != nil {
		return "", false, err
	}
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(host, strconv.Itoa(port)),
		Path:     "/" + name,
		RawQuery: url.Values{"sslmode": {sslmode}}.Encode(),
	}
	if password := getenv("DATABASE_PASSWORD"); password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String(), true, nil
}
