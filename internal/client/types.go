package client

import "github.com/nodeboot/nodeboot/internal/contract"

// The JSON bodies of docs/api.md are defined once, in internal/contract,
// with the node's side; these names are the client's vocabulary for them.
type (
	Status        = contract.Status
	NodeStatus    = contract.NodeStatus
	Memory        = contract.Memory
	DataStatus    = contract.DataStatus
	AppStatus     = contract.AppStatus
	DeployResult  = contract.DeployResult
	RestartResult = contract.RestartResult
	ActionResult  = contract.ActionResult
	RevokeResult  = contract.RevokeResult
)
