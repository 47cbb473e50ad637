package messaging

// PipelinedBeginner is the forwarders' transaction beginner, for the
// external tests.
var PipelinedBeginner = newPipelinedBeginner
