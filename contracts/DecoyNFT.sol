// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

interface IGliskMint {
    function mint(address promptAuthor, uint256 quantity) external payable;
}

/// @notice False-positive bait for the pipeline. It emits a BatchMinted with the very same
/// signature (same topic0) as GliskNFT from another address, and BatchBurned, which has the same
/// indexed layout under another name. Only address + topic0 together identify a real mint.
contract DecoyNFT {
    event BatchMinted(
        address indexed minter,
        address indexed promptAuthor,
        uint256 indexed startTokenId,
        uint256 quantity,
        uint256 totalPaid
    );
    event BatchBurned(
        address indexed minter,
        address indexed promptAuthor,
        uint256 indexed startTokenId,
        uint256 quantity,
        uint256 totalPaid
    );

    /// Look-alike mint: any start id, so it can collide with real token ids.
    function fakeMint(address promptAuthor, uint256 startTokenId, uint256 quantity)
        external
        payable
    {
        emit BatchMinted(msg.sender, promptAuthor, startTokenId, quantity, msg.value);
    }

    function fakeBurn(address promptAuthor, uint256 startTokenId, uint256 quantity) external {
        emit BatchBurned(msg.sender, promptAuthor, startTokenId, quantity, 0);
    }

    /// A real mint wrapped between two decoy logs: the genuine BatchMinted is neither the first
    /// log of its transaction nor from an EOA (its minter is this contract).
    function mintThrough(address glisk, address promptAuthor, uint256 quantity) external payable {
        emit BatchBurned(msg.sender, promptAuthor, 0, quantity, msg.value);
        IGliskMint(glisk).mint{value: msg.value}(promptAuthor, quantity);
        emit BatchMinted(msg.sender, promptAuthor, 0, quantity, msg.value);
    }
}
