package client

// The JSON bodies of docs/api.md, as the node sends them.

// Status is GET /v1/status.
type Status struct {
	Node NodeStatus  `json:"node"`
	Apps []AppStatus `json:"apps"`
}

// NodeStatus is the node half of Status.
type NodeStatus struct {
	Hostname        string     `json:"hostname"`
	UptimeSeconds   float64    `json:"uptimeSeconds"`
	BootID          string     `json:"bootId"`
	Kernel          string     `json:"kernel"`
	NodeVersion     string     `json:"nodeVersion"`
	ImageVersion    string     `json:"imageVersion"`
	BootSeconds     float64    `json:"bootSeconds"`
	Memory          Memory     `json:"memory"`
	Data            DataStatus `json:"data"`
	Addresses       []string   `json:"addresses"`
	CPUSecondsTotal float64    `json:"cpuSecondsTotal"`
}

// Memory is the node's RAM.
type Memory struct {
	TotalBytes     uint64 `json:"totalBytes"`
	AvailableBytes uint64 `json:"availableBytes"`
}

// DataStatus is the /data file system.
type DataStatus struct {
	TotalBytes uint64 `json:"totalBytes"`
	FreeBytes  uint64 `json:"freeBytes"`
	Persistent bool   `json:"persistent"`
}

// AppStatus is one app of the node.
type AppStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"lastExit"`
	// StartedAt stays a string: a stopped app may send "", which
	// time.Time would refuse, and the CLI only shows it.
	StartedAt       string `json:"startedAt"`
	Port            int    `json:"port"`
	Version         string `json:"version"` // "image" or "sha256:<hex>"
	PreviousVersion string `json:"previousVersion"`
}

// App returns the app named name, or nil.
func (s *Status) App(name string) *AppStatus {
	for i := range s.Apps {
		if s.Apps[i].Name == name {
			return &s.Apps[i]
		}
	}
	return nil
}

// AppNames lists the apps in the node's order.
func (s *Status) AppNames() []string {
	names := make([]string, 0, len(s.Apps))
	for _, a := range s.Apps {
		names = append(names, a.Name)
	}
	return names
}

// DeployResult is the answer of a deploy or a rollback.
type DeployResult struct {
	App             string `json:"app"`
	Version         string `json:"version"`
	PreviousVersion string `json:"previousVersion"`
	State           string `json:"state"`
}

// RestartResult is the answer of POST /v1/apps/{app}/restart.
type RestartResult struct {
	App string `json:"app"`
	PID int    `json:"pid"`
}

// ActionResult is the answer of POST /v1/reboot and /v1/poweroff.
type ActionResult struct {
	Action string `json:"action"`
}

// errorBody is every 4xx/5xx body; Logs only on a 422 deploy.
type errorBody struct {
	Error string   `json:"error"`
	Logs  []string `json:"logs"`
}
