-- GET (dequeue) the next message.
wrk.method = "GET"
