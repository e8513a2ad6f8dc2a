// Package dynamostore keeps WebSocket connections in the DynamoDB table
// used on AWS: partition key connectionId, a userId-index GSI for fanout,
// and expiresAt as the table's TTL attribute.
package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/connstore"
)

// Item attribute and index names: they are the deployed table's layout.
const (
	attrID          = "connectionId"
	attrUserID      = "userId"
	attrConnectedAt = "connectedAt"
	attrLastPingAt  = "lastPingAt"
	attrExpiresAt   = "expiresAt"
	// attrGateway is absent from items of unknown holders (written before
	// gateways were recorded, or with none).
	attrGateway = "gateway"
	// attrTokenExpiresAt is absent when the token's expiry is not recorded.
	attrTokenExpiresAt = "tokenExpiresAt"
	// attrFeed is a BOOL, present only on feed-mode connections: items
	// written before the mode existed read as not in feed mode.
	attrFeed = "feed"

	// UserIndex is the global secondary index on userId (projection ALL).
	UserIndex = "userId-index"
)

// API is the part of *dynamodb.Client the store uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

var _ API = (*dynamodb.Client)(nil)

// Store implements connstore.Store over one DynamoDB table.
type Store struct {
	api   API
	table string
	now   func() time.Time
	// pageSize caps items read per Query page; 0 leaves it to DynamoDB
	// (1 MB pages). Tests shrink it to exercise pagination.
	pageSize int32
}

var _ connstore.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock ByUser uses to hide expired items.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store over table.
func New(api API, table string, opts ...Option) *Store {
	s := &Store{api: api, table: table, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewClient returns a client for AWS itself or, when o.Endpoint is set, for
// a local DynamoDB such as http://127.0.0.1:4567 (see awsconf.Load).
func NewClient(ctx context.Context, o awsconf.Options) (*dynamodb.Client, error) {
	cfg, err := awsconf.Load(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("dynamostore: %w", err)
	}
	return dynamodb.NewFromConfig(cfg), nil
}

// CreateTable creates the table with its GSI and waits until it is active.
// An existing table is accepted as is. On AWS the stack owns the table
// (and its TTL setting on expiresAt); this is for local runs and tests.
func (s *Store) CreateTable(ctx context.Context) error {
	_, err := s.api.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(s.table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrID), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrUserID), AttributeType: types.ScalarAttributeTypeN},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrID), KeyType: types.KeyTypeHash},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String(UserIndex),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrUserID), KeyType: types.KeyTypeHash},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamostore: create table %s: %w", s.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(s.api, func(o *dynamodb.TableExistsWaiterOptions) {
		// The defaults (20 s minimum) suit AWS; local tables are ready in
		// well under a second.
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 5 * time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, 5*time.Minute); err != nil {
		return fmt.Errorf("dynamostore: wait for table %s: %w", s.table, err)
	}
	return nil
}

// Put records or replaces a connection.
func (s *Store) Put(ctx context.Context, c connstore.Connection) error {
	item := map[string]types.AttributeValue{
		attrID:          &types.AttributeValueMemberS{Value: c.ID},
		attrUserID:      &types.AttributeValueMemberN{Value: strconv.FormatInt(c.UserID, 10)},
		attrConnectedAt: timeValue(c.ConnectedAt),
		attrLastPingAt:  timeValue(c.LastPingAt),
		attrExpiresAt:   expiryValue(c.ExpiresAt),
	}
	if c.Gateway != "" {
		item[attrGateway] = &types.AttributeValueMemberS{Value: c.Gateway}
	}
	if !c.TokenExpiresAt.IsZero() {
		item[attrTokenExpiresAt] = timeValue(c.TokenExpiresAt)
	}
	if c.Feed {
		item[attrFeed] = &types.AttributeValueMemberBOOL{Value: true}
	}
	_, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item})
	if err != nil {
		return fmt.Errorf("dynamostore: put %s: %w", c.ID, err)
	}
	return nil
}

// Get returns one connection or connstore.ErrNotFound. Like pgstore, it
// returns an expired item that TTL has not deleted yet.
func (s *Store) Get(ctx context.Context, id string) (connstore.Connection, error) {
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table),
		Key:       key(id),
		// A lookup right after $connect must see the item.
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return connstore.Connection{}, fmt.Errorf("dynamostore: get %s: %w", id, err)
	}
	if out.Item == nil {
		return connstore.Connection{}, fmt.Errorf("dynamostore: get %s: %w", id, connstore.ErrNotFound)
	}
	c, err := decode(out.Item)
	if err != nil {
		return connstore.Connection{}, fmt.Errorf("dynamostore: get %s: %w", id, err)
	}
	return c, nil
}

// Delete removes a connection; an unknown id is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	_, err := s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(s.table),
		Key:       key(id),
	})
	if err != nil {
		return fmt.Errorf("dynamostore: delete %s: %w", id, err)
	}
	return nil
}

// Touch records a ping and extends the expiry, or returns
// connstore.ErrNotFound.
func (s *Store) Touch(ctx context.Context, id string, at, expiresAt time.Time) error {
	_, err := s.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table),
		Key:       key(id),
		// Without the condition UpdateItem would create a partial item.
		ConditionExpression: aws.String("attribute_exists(#id)"),
		UpdateExpression:    aws.String("SET #ping = :ping, #exp = :exp"),
		ExpressionAttributeNames: map[string]string{
			"#id": attrID, "#ping": attrLastPingAt, "#exp": attrExpiresAt,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":ping": timeValue(at),
			":exp":  expiryValue(expiresAt),
		},
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return fmt.Errorf("dynamostore: touch %s: %w", id, connstore.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("dynamostore: touch %s: %w", id, err)
	}
	return nil
}

// ByUsers queries the user index once per user, a few at a time: DynamoDB
// has no multi-key query on an index.
func (s *Store) ByUsers(ctx context.Context, userIDs []int64) (map[int64][]connstore.Connection, error) {
	out := make(map[int64][]connstore.Connection, len(userIDs))
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range slices.Compact(slices.Sorted(slices.Values(userIDs))) {
		g.Go(func() error {
			cs, err := s.ByUser(ctx, id)
			if err != nil || len(cs) == 0 {
				return err
			}
			mu.Lock()
			out[id] = cs
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// ByUser lists a user's unexpired connections, oldest first. It filters
// expired items itself because TTL deletion lags expiry by up to days.
// The GSI is eventually consistent: a connection recorded a moment ago may
// be missing for a fraction of a second on AWS.
func (s *Store) ByUser(ctx context.Context, userID int64) ([]connstore.Connection, error) {
	in := &dynamodb.QueryInput{
		TableName:              aws.String(s.table),
		IndexName:              aws.String(UserIndex),
		KeyConditionExpression: aws.String("#user = :user"),
		// expiresAt holds whole seconds, so "> floor(now)" equals "> now".
		FilterExpression: aws.String("#exp > :now"),
		ExpressionAttributeNames: map[string]string{
			"#user": attrUserID, "#exp": attrExpiresAt,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":user": &types.AttributeValueMemberN{Value: strconv.FormatInt(userID, 10)},
			":now":  &types.AttributeValueMemberN{Value: strconv.FormatInt(s.now().Unix(), 10)},
		},
	}
	if s.pageSize > 0 {
		in.Limit = aws.Int32(s.pageSize)
	}
	out := []connstore.Connection{}
	pages := dynamodb.NewQueryPaginator(s.api, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamostore: list connections of user %d: %w", userID, err)
		}
		for _, item := range page.Items {
			c, err := decode(item)
			if err != nil {
				return nil, fmt.Errorf("dynamostore: list connections of user %d: %w", userID, err)
			}
			out = append(out, c)
		}
	}
	// The GSI has no sort key; order like pgstore does.
	slices.SortFunc(out, func(a, b connstore.Connection) int {
		if c := a.ConnectedAt.Compare(b.ConnectedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// DeleteByGateway removes every item held by gateway. The table has no
// index on the gateway, so this scans it: it runs once per start of a
// local gateway, never on AWS, where API Gateway does not restart. Each
// delete is conditional on the holder, so an item that changed hands
// since the scan is left alone.
func (s *Store) DeleteByGateway(ctx context.Context, gateway string) ([]int64, error) {
	if gateway == "" {
		return nil, fmt.Errorf("dynamostore: delete connections by gateway: %w", connstore.ErrNoGateway)
	}
	names := map[string]string{"#id": attrID, "#gw": attrGateway, "#uid": attrUserID}
	values := map[string]types.AttributeValue{":gw": &types.AttributeValueMemberS{Value: gateway}}
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(s.table),
		FilterExpression:          aws.String("#gw = :gw"),
		ProjectionExpression:      aws.String("#id, #uid"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
		ConsistentRead:            aws.Bool(true),
	}
	if s.pageSize > 0 {
		in.Limit = aws.Int32(s.pageSize)
	}
	var users []int64
	pages := dynamodb.NewScanPaginator(s.api, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return users, fmt.Errorf("dynamostore: scan connections of gateway %q: %w", gateway, err)
		}
		for _, item := range page.Items {
			d := decoder{item: item}
			id, user := d.str(attrID), d.num(attrUserID)
			if d.err != nil {
				return users, fmt.Errorf("dynamostore: scan connections of gateway %q: %w", gateway, d.err)
			}
			_, err := s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{
				TableName:                 aws.String(s.table),
				Key:                       key(id),
				ConditionExpression:       aws.String("#gw = :gw"),
				ExpressionAttributeNames:  map[string]string{"#gw": attrGateway},
				ExpressionAttributeValues: values,
			})
			var failed *types.ConditionalCheckFailedException
			switch {
			case errors.As(err, &failed):
				// Gone or held by another gateway since the scan.
			case err != nil:
				return users, fmt.Errorf("dynamostore: delete %s of gateway %q: %w", id, gateway, err)
			default:
				users = append(users, user)
			}
		}
	}
	return users, nil
}

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrID: &types.AttributeValueMemberS{Value: id}}
}

func timeValue(t time.Time) types.AttributeValue {
	return &types.AttributeValueMemberS{Value: t.UTC().Format(time.RFC3339Nano)}
}

// expiryValue stores epoch seconds, the only form DynamoDB TTL reads,
// rounded up so that a connection never expires before it was asked to.
func expiryValue(t time.Time) types.AttributeValue {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(sec, 10)}
}

func decode(item map[string]types.AttributeValue) (connstore.Connection, error) {
	d := decoder{item: item}
	c := connstore.Connection{
		ID:          d.str(attrID),
		UserID:      d.num(attrUserID),
		ConnectedAt: d.time(attrConnectedAt),
		LastPingAt:  d.time(attrLastPingAt),
		ExpiresAt:   time.Unix(d.num(attrExpiresAt), 0).UTC(),
	}
	if _, ok := item[attrGateway]; ok {
		c.Gateway = d.str(attrGateway)
	}
	if _, ok := item[attrTokenExpiresAt]; ok {
		c.TokenExpiresAt = d.time(attrTokenExpiresAt)
	}
	if _, ok := item[attrFeed]; ok {
		c.Feed = d.bool(attrFeed)
	}
	if d.err != nil {
		return connstore.Connection{}, fmt.Errorf("item %q: %w", c.ID, d.err)
	}
	return c, nil
}

// decoder reads typed attributes, keeping the first problem.
type decoder struct {
	item map[string]types.AttributeValue
	err  error
}

func (d *decoder) str(name string) string {
	v, ok := d.item[name].(*types.AttributeValueMemberS)
	if !ok {
		d.fail(fmt.Errorf("%s: want a string, got %T", name, d.item[name]))
		return ""
	}
	return v.Value
}

func (d *decoder) num(name string) int64 {
	v, ok := d.item[name].(*types.AttributeValueMemberN)
	if !ok {
		d.fail(fmt.Errorf("%s: want a number, got %T", name, d.item[name]))
		return 0
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		d.fail(fmt.Errorf("%s: %w", name, err))
	}
	return n
}

func (d *decoder) bool(name string) bool {
	v, ok := d.item[name].(*types.AttributeValueMemberBOOL)
	if !ok {
		d.fail(fmt.Errorf("%s: want a boolean, got %T", name, d.item[name]))
		return false
	}
	return v.Value
}

// zonelessLayout is how Python's datetime.isoformat() writes a naive time.
// Items written that way by other (Python) writers of the table are read
// as UTC rather than failing a whole fanout lookup.
const zonelessLayout = "2006-01-02T15:04:05.999999999"

func (d *decoder) time(name string) time.Time {
	s := d.str(name)
	if d.err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		var err2 error
		if t, err2 = time.Parse(zonelessLayout, s); err2 != nil {
			d.fail(fmt.Errorf("%s: %w", name, err))
			return time.Time{}
		}
	}
	return t.UTC()
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}
