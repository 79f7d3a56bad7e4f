package api

import "github.com/gin-gonic/gin"

// RouteTable is s's real route table (gin.Engine.Routes()), as New built it.
func RouteTable(s *Server) gin.RoutesInfo { return s.router.Routes() }
