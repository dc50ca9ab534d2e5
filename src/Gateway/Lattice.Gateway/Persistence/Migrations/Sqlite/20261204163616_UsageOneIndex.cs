using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lattice.Gateway.Persistence.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class UsageOneIndex : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_usage_records_GrantId_CreatedAt",
                table: "usage_records");

            migrationBuilder.DropIndex(
                name: "IX_usage_records_WorkspaceId_KeyId_CreatedAt",
                table: "usage_records");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "IX_usage_records_GrantId_CreatedAt",
                table: "usage_records",
                columns: new[] { "GrantId", "CreatedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_usage_records_WorkspaceId_KeyId_CreatedAt",
                table: "usage_records",
                columns: new[] { "WorkspaceId", "KeyId", "CreatedAt" });
        }
    }
}
