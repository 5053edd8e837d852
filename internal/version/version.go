// Package version holds kiln's version, for the packages that record it
// (plans, timing caches) without importing the root package.
package version

// Kiln is kiln's version. A plan records the version that built it and
// loads only in the same version.
const Kiln = "0.1.0"
