using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lattice.Gateway.Persistence.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class EmailVerified : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<bool>(
                name: "EmailVerified",
                table: "users",
                type: "INTEGER",
                nullable: false,
                defaultValue: false);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "EmailVerified",
                table: "users");
        }
    }
}
