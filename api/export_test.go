package api

// InFlightRequests reports how many requests s is handling, so that
// external tests can wait until their requests are inside the handlers.
func InFlightRequests(s *Server) int64 { return s.inFlight.Load() }
