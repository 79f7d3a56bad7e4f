-- POST a ~100-byte JSON message, like the ancestor's post.lua.
wrk.method = "POST"
wrk.body = '{"event":"order.created","order":123456,"customer":"c-000042","items":3,"total":"59.90","pad":"xxx"}'
wrk.headers["Content-Type"] = "application/json"
