"""The policy's rollouts: K scored samples per problem (templated where assigned), and mining the
problems it almost never solves."""
