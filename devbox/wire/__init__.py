"""The wire layer: one sans-IO codec per protocol and one contract every dependency kind
implements (see ``contract``). Nothing above this package needs to know which protocol a
dependency speaks."""
