package tracing

// FlushBudget exposes flushBudget to the black-box tests.
var FlushBudget = flushBudget
