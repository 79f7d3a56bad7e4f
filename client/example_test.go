package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqueue/mqueue/client"
)

func Example() {
	ctx := context.Background()
	c := client.New(exampleBase) // e.g. "http://localhost:8088"

	id, err := c.Enqueue(ctx, "orders", []byte("hello"), client.EnqueueOptions{TTL: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, ok, err := c.Lease(ctx, "orders", 30*time.Second, 5*time.Second)
	if err != nil || !ok {
		fmt.Println(ok, err)
		return
	}
	fmt.Println(id, m.ID, string(m.Body), m.DeliveryCount)
	if err := c.Ack(ctx, "orders", m.Receipt); err != nil {
		fmt.Println(err)
	}
	_, err = c.Stats(ctx, "unknown")
	fmt.Println(errors.Is(err, client.ErrQueueNotFound))
	// Output:
	// 1 1 hello 1
	// true
}
