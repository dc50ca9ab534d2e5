using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Persistence;

/// <summary>
/// <see cref="LatticeDbContext"/> on PostgreSQL. The model is the base class's; this type exists so that PostgreSQL has
/// its own migrations and snapshot (Migrations/Postgres), EF Core's way of keeping one migration set per provider in one
/// assembly: migrations belong to the context type named in their <c>[DbContext]</c> attribute.
/// </summary>
public sealed class PostgresLatticeDbContext(DbContextOptions<PostgresLatticeDbContext> options) : LatticeDbContext(options);
