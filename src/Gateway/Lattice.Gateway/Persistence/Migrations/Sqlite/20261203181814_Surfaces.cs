using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lattice.Gateway.Persistence.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class Surfaces : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Surface",
                table: "usage_records",
                type: "TEXT",
                nullable: false,
                defaultValue: "openai");

            migrationBuilder.AddColumn<bool>(
                name: "ServesResponses",
                table: "model_offers",
                type: "INTEGER",
                nullable: false,
                defaultValue: false);

            migrationBuilder.CreateTable(
                name: "responses",
                columns: table => new
                {
                    Id = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    WorkspaceId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    KeyId = table.Column<string>(type: "TEXT", nullable: true),
                    AppId = table.Column<string>(type: "TEXT", nullable: true),
                    UserId = table.Column<string>(type: "TEXT", nullable: true),
                    Model = table.Column<string>(type: "TEXT", maxLength: 300, nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    ExpiresAt = table.Column<long>(type: "INTEGER", nullable: false),
                    Input = table.Column<string>(type: "TEXT", nullable: false),
                    Body = table.Column<string>(type: "TEXT", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_responses", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_responses_ExpiresAt",
                table: "responses",
                column: "ExpiresAt");

            migrationBuilder.CreateIndex(
                name: "IX_responses_WorkspaceId_CreatedAt",
                table: "responses",
                columns: new[] { "WorkspaceId", "CreatedAt" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "responses");

            migrationBuilder.DropColumn(
                name: "Surface",
                table: "usage_records");

            migrationBuilder.DropColumn(
                name: "ServesResponses",
                table: "model_offers");
        }
    }
}
