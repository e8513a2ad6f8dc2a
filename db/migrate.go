package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is an arbitrary advisory lock key: it serializes concurrent
// migrators (several processes starting at once) on one database.
const migrationLock = 7_301_990_412

// Migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own transaction. Running it twice is a no-op.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock) //nolint:errcheck // released with the session anyway

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}

	versions, err := Versions()
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}

	var applied []string
	for _, version := range versions {
		name := "migrations/" + version + ".sql"
		var done bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&done); err != nil {
			return applied, fmt.Errorf("migrate: check %s: %w", version, err)
		}
		if done {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return applied, fmt.Errorf("migrate: read %s: %w", name, err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migrate: apply %s: %w", version, err)
		}
		applied = append(applied, version)
	}
	return applied, nil
}

// Versions lists the embedded migrations in the order Migrate applies them.
// The stack re-runs its migration step whenever this list changes.
func Versions() ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	versions := make([]string, len(names))
	for i, name := range names {
		versions[i] = strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
	}
	return versions, nil
}

// EnsureDatabase creates the database databaseURL names if it does not
// exist, connecting to the server's maintenance database to do so. The URL
// is parsed as the pool parses it, so pgxpool's pool_* parameters are not
// sent to the server as settings.
func EnsureDatabase(ctx context.Context, databaseURL string) (created bool, err error) {
	pcfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return false, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	cfg := pcfg.ConnConfig
	name := cfg.Database
	if name == "" {
		return false, errors.New("DATABASE_URL names no database")
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return false, fmt.Errorf("connect to maintenance database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Asked first: PostgreSQL checks CREATEDB before whether the database
	// exists, and the application's role on a managed server rarely has it.
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return false, nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}
